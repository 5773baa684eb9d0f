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
t = time.time(); s = 0
while time.time() - t < 1.0: s ^= run(store, 50)
print(s)
