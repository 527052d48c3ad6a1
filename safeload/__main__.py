from safeload._cli import entry

entry()
