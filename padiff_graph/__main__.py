from padiff_graph.cli import main

main()
