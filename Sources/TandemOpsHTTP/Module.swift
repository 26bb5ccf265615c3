// Module TandemOpsHTTP.
