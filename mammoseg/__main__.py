from mammoseg.cli import main

main()
