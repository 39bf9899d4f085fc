"""Networks shared by L-AWR and every baseline."""
