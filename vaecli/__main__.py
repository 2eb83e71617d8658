"""`python -m vaecli` (also what `accelerate launch -m vaecli` runs)."""

from vaecli.cli import main

if __name__ == "__main__":
    main()
