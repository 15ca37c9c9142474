"""`python -m modelserve ...`: the same command as the `modelserve` script."""

from modelserve.cli.main import main

if __name__ == "__main__":
    main()
