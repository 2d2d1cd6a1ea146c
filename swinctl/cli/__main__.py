from swinctl.cli import main

main()
