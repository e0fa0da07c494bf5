#!/usr/bin/env python3
"""The host C API (core/src/c_host_api.cpp) widens a caller's shorter args struct (one built with
older headers) by zero-filling the fields it lacks: right only while every grown field's registry
default is 0 / NULL. Fails naming the field when abi/registry/ops.txt gives another default."""
import re
import sys

bad = []
with open(sys.argv[1], encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        if line.lstrip().startswith("#"):
            continue
        for field, value in re.findall(r"(\w+):[^,()]*?\bdefault=([^,)\s]+)", line):
            if value not in ("0", "0.0", "NULL", "0u"):
                bad.append(f"ops.txt:{n}: field '{field}' has default={value}")
if bad:
    print("the C host API zero-fills the fields a shorter struct lacks; these defaults are not 0 "
          "(teach call_typed in core/src/c_host_api.cpp to fill them):\n  " + "\n  ".join(bad))
    sys.exit(1)
print("every grown field's default is 0")
