"""Accounts: the people whose data Glucoshare holds (patients) and, later, the people who sign in."""
