from rarecli.cli.app import main

main()
