from pae_lab.cli import app

app(prog_name="pae-lab")
