extern unsigned imp_a(unsigned) __attribute__((import_module("env"), import_name("a")));
extern unsigned imp_b(unsigned) __attribute__((import_module("env"), import_name("b")));
__attribute__((noinline)) unsigned mix(unsigned x) { for (int i = 0; i < 50; i++) x = x * 1664525u + 1013904223u ^ (x >> 7); return x; }
__attribute__((noinline)) unsigned inner(unsigned n) { unsigned a = 0; for (unsigned i = 0; i < n; i++) a += mix(i); return a + imp_b(a); }
__attribute__((export_name("run"))) unsigned run(unsigned n) { unsigned s = imp_a(n); for (unsigned i = 0; i < n; i++) s ^= inner(1000); return s; }
