def test_fixture(EventEmitter, impl):
    e = EventEmitter()
    got = []
    e.on("a", got.append)
    e.emit("a", 1)
    assert got == [1]
    assert type(e).__mro__[2] is impl.core.EmitterCore
