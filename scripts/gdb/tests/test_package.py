"""The package's split: the pure modules import without gdb (which is what lets these tests run
on the host at all), and `import broadside` is the package, not the loader file beside it."""

import os
import subprocess
import sys
import unittest

GDB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = ("broadside", "broadside.kernel", "broadside.pte", "broadside.sysregs", "broadside.text")


class Package(unittest.TestCase):
    def run_python(self, code):
        # A fresh interpreter: this one may already hold modules other tests imported.
        return subprocess.run([sys.executable, "-c", code], cwd=GDB_DIR, capture_output=True,
                              text=True)

    def test_pure_modules_do_not_import_gdb(self):
        r = self.run_python(
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'gdb': raise ImportError('gdb imported by a pure module')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import %s\n"
            "print('gdb' in sys.modules)\n" % ", ".join(PURE))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "False"), r.stderr)

    def test_gdb_modules_need_gdb(self):
        # The command modules are gdb's: on the host they fail to import, loudly.
        r = self.run_python("import broadside.commands")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No module named 'gdb'", r.stderr)

    def test_import_finds_the_package_not_the_loader(self):
        r = self.run_python("import broadside; print(broadside.__file__)")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(GDB_DIR, "broadside", "__init__.py"))


if __name__ == "__main__":
    unittest.main()
