"""Print the host's third-party requirements from pyproject.toml, one per line (a requirements file):
its dependencies and the test and bench extras, less mtedge-runtime, which `make install` builds
from runtime/ in this checkout."""
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
extras = project.get("optional-dependencies", {})
for req in list(project["dependencies"]) + extras.get("test", []) + extras.get("bench", []):
    req = req.split("#")[0].strip()
    if not req.startswith("mtedge-runtime"):
        print(req)
