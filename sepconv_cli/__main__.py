"""``python -m sepconv_cli`` runs the CLI."""

from sepconv_cli.cli import main

if __name__ == "__main__":
    main()
