from dexwatch.cli import app

app(prog_name="dexwatch")
