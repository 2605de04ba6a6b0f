from dexwatch.app.cli import main

main()
