#!/usr/bin/python3
"""Write a Lua source file as a C string constant: embed.py IN.lua OUT.h NAME."""
import sys

src, out, name = sys.argv[1:4]
with open(src, encoding="utf-8") as f:
    text = f.read()
with open(out, "w", encoding="utf-8") as f:
    f.write("/* generated from %s by bindings/lua/embed.py */\n" % src.split("/")[-1])
    f.write("static const char %s[] =\n" % name)
    for line in text.splitlines(True):
        f.write('    "%s"\n' % line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
    f.write("    ;\n")
