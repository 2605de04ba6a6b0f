"""The top floor: the only code that imports the components (publishers, beam_pipelines,
model, infra). ``cli`` holds the commands, ``workflows`` what they run across components,
``views`` the terminal views."""
