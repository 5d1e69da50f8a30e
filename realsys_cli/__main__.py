from realsys_cli.launch import main

main()
