"""``python -m glucoshare`` runs the command line."""

from glucoshare.cli import main

main()
