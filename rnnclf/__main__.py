"""`python -m rnnclf` is the same as the `rnnclf` command (and what torchrun starts)."""

from rnnclf.cli.quick import main

main()
