print("tandem-bench")
