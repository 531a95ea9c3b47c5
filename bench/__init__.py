"""Holdfast benchmarks: ``make bench`` (or ``python -m bench``) runs every module here.

Each module has a ``main(argv)`` that measures something, prints it, and writes its
figures into ``docs/benchmarks.md`` (its own section, between marker comments, so the
modules never overwrite each other). Benchmarks are not tests: nothing here fails a
build for being slow, the numbers are for people to read.
"""
