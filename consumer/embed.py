#!/usr/bin/env python3
"""embed.py: turns a text file (the Redis sink's Lua script) into a C file
defining `const char NAME[]` (its bytes, NUL-terminated) and `const size_t
NAME_len`, so the binary carries the script and reads no file at run time.
Usage: embed.py INPUT OUTPUT NAME"""
import sys


def main():
    src, dst, name = sys.argv[1:4]
    with open(src, 'rb') as f:
        data = f.read()
    if b'\0' in data:
        sys.exit(f'embed.py: {src} contains a NUL byte')
    lines = [f'/* {name}: generated from {src.rsplit("/", 1)[-1]} by embed.py; do not edit. */',
             '#include <stddef.h>', '',
             f'extern const char {name}[];', f'extern const size_t {name}_len;',
             f'const char {name}[] = {{']
    for i in range(0, len(data), 16):
        lines.append('    ' + ' '.join(f'0x{b:02x},' for b in data[i:i + 16]))
    lines += ['    0x00,', '};', f'const size_t {name}_len = {len(data)};', '']
    with open(dst, 'w') as f:
        f.write('\n'.join(lines))


if __name__ == '__main__':
    main()
