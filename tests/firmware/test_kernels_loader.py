"""The kernel loader picks native or fallback kernels and says so."""


def test_loader_reports_the_architecture(upy):
    out = upy("""
        import upet.kernels as k
        print(k.arch())
        print(k.force_fallback)
    """)
    arch, forced = out.split()
    assert arch == "x64"
    assert forced == str(upy.fallback)
