"""Print the runtime + test requirements of pyproject.toml, one shell word each."""
import shlex
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
reqs = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
print(" ".join(shlex.quote(r) for r in reqs))
