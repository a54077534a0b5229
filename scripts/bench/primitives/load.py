#!/usr/bin/env python3
"""Loads a BPF object with libbpf (ctypes), attaches every program, holds
them for N seconds, then exits (the kernel detaches them with our fds).

usage: load.py OBJECT SECONDS
"""
import ctypes
import sys
import time

lib = ctypes.CDLL("libbpf.so.1")
lib.bpf_object__open_file.restype = ctypes.c_void_p
lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
lib.bpf_object__load.argtypes = [ctypes.c_void_p]
lib.bpf_object__next_program.restype = ctypes.c_void_p
lib.bpf_object__next_program.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
lib.bpf_program__attach.restype = ctypes.c_void_p
lib.bpf_program__attach.argtypes = [ctypes.c_void_p]
lib.bpf_program__name.restype = ctypes.c_char_p
lib.bpf_program__name.argtypes = [ctypes.c_void_p]

obj = lib.bpf_object__open_file(sys.argv[1].encode(), None)
if not obj or lib.bpf_object__load(obj) != 0:
    sys.exit(f"load.py: cannot load {sys.argv[1]}")
links, prog = [], None
while True:
    prog = lib.bpf_object__next_program(obj, prog)
    if not prog:
        break
    link = lib.bpf_program__attach(prog)
    if not link:
        sys.exit(f"load.py: cannot attach {lib.bpf_program__name(prog).decode()}")
    links.append(link)
print(f"load.py: {len(links)} programs attached", flush=True)
time.sleep(float(sys.argv[2]))
