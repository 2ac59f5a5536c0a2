from workflows_tick.cli import main

main()
