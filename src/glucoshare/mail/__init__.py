"""Outgoing e-mail: one service for every message Glucoshare sends."""
