from jnet.cli import main

main()
