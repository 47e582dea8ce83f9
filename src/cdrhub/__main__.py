"""Allow ``python -m cdrhub``."""

from cdrhub.cli import main

if __name__ == "__main__":
    main()
