from realsys_cli.cli import main

main()
