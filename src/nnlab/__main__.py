"""``python -m nnlab`` is the same CLI as ``nnlab`` (so ``torchrun -m nnlab train ...`` works)."""

from nnlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
