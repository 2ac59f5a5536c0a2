from workflows_tick.entry import main

main()
