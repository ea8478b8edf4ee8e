from epm.cli import main

main()
