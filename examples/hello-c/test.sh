#!/bin/sh
# Runs in every guest, with or without a compiler.
set -e
test -f hello.c
grep -q 'hello from a vmci job' hello.c
echo "sources look right"
