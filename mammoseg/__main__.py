from mammoseg.cli import main

if __name__ == "__main__":  # processes started by `spawn` import this module too
    main()
