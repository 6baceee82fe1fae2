"""Print the runtime + test requirements of pyproject.toml, one per line (a requirements file)."""
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for req in list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", [])):
    print(req.split("#")[0].strip())
