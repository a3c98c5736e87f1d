from dsroll.cli import main

main()
