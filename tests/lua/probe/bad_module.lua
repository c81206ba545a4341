error("bad module")
