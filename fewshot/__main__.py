"""``python -m fewshot`` (also what ``torchrun -m fewshot`` runs)."""

import sys

from fewshot.cli import main

if __name__ == "__main__":
    sys.exit(main())
