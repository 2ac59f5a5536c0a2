# Puts the project folder on sys.path, so tests can `from config import DAGS`.
