"""Programs written for the toolchain tests (plugin-like code: routes, hashing, recursion
across files, an inlined trap); shared by test_toolchain_modules and test_sourcemap."""

EM_SRC = r'''
#include <cstdio>
#include <map>
#include <string>
#include <vector>

struct Route { std::string host; int weight; };

static std::vector<Route> load_routes(int n) {
    std::vector<Route> v;
    for (int i = 0; i < n; i++) v.push_back(Route{"svc-" + std::to_string(i), i * 7 % 13});
    return v;
}

__attribute__((noinline)) int pick(const std::vector<Route> &routes, const std::string &h) {
    int s = 0;
    for (auto &r : routes) {
        if (r.host == h) s += r.weight;
        if (r.weight == 12 && h.size() == 6) __builtin_trap();          /* EM_TRAP */
    }
    return s;
}

int main(int argc, char **argv) {
    auto routes = load_routes(20 + argc);
    std::map<std::string, int> by_host;
    for (auto &r : routes) by_host[r.host] += r.weight;
    std::string h = argc > 1 ? argv[1] : "svc-12";
    int s = pick(routes, h) + by_host[h];
    std::printf("%d\n", s);
    return s;
}
'''

GHOST_MAIN = r'''
#include <stdio.h>
int walk(int depth, const char *tag);
static inline __attribute__((always_inline)) int bounded(int v) {
    if (v > 1000) __builtin_trap();
    return v * 3;
}
int main(int argc, char **argv) {
    char key[48];
    snprintf(key, sizeof key, "route-%d", argc);
    int total = 0;
    for (int i = 0; i < argc + 3; i++) total += bounded(walk(i + argc, key));
    printf("%d %s\n", total, key);
    return total & 1;
}
'''

GHOST_WALK = r'''
#include <stdlib.h>
#include <string.h>
static int checksum(const char *s) { int w = 0; while (*s) w += *s++; return w; }
int walk(int depth, const char *tag) {
    if (depth <= 0) {
        if (strlen(tag) > 40) abort();
        return checksum(tag) & 7;
    }
    int *scratch = malloc(16 + depth);
    scratch[0] = depth;
    int r = walk(depth - 1, tag) + scratch[0];
    free(scratch);
    if (r == 77) __builtin_trap();
    return r;
}
'''

RUST_SRC = r'''
use std::collections::HashMap;
#[inline(always)]
fn weight(s: &str) -> u32 { s.bytes().map(|b| b as u32).sum() }
#[inline(never)]
fn route(table: &HashMap<String, u32>, host: &str) -> u32 {
    let w = weight(host);
    match table.get(host) {
        Some(v) => v + w,
        None => { if w > 5000 { panic!("host too heavy: {}", host) } w }
    }
}
fn main() {
    let mut t = HashMap::new();
    for i in 0..20 { t.insert(format!("h{}", i), i * 3); }
    let args: Vec<String> = std::env::args().collect();
    let host = if args.len() > 1 { args[1].clone() } else { "x".repeat(40) };
    println!("{}", route(&t, &host));
}
'''


