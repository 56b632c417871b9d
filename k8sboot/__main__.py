from k8sboot.cli import main

main()
