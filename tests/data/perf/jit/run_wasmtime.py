"""Run jit_hot.wasm in PyPI wasmtime with the perfmap profiler: python run_wasmtime.py M.wasm [SECONDS]"""
import sys, time, wasmtime
cfg = wasmtime.Config(); cfg.profiler = "perfmap"
eng = wasmtime.Engine(cfg); store = wasmtime.Store(eng)
mod = wasmtime.Module.from_file(eng, sys.argv[1])
linker = wasmtime.Linker(eng)
ft = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
linker.define_func("env", "a", ft, lambda x: x)
linker.define_func("env", "b", ft, lambda x: x & 1)
inst = linker.instantiate(store, mod)
run = inst.exports(store)["run"]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
t = time.time(); s = 0
while time.time() - t < seconds: s ^= run(store, 50)
print(s)
