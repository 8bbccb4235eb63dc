from vcmtool.cli import main

main()
