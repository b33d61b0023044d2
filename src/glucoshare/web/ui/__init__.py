"""The web app: server-rendered pages for patients, care partners and clinics."""
