// Module TandemCore.
