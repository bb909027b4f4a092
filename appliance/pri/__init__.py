"""ISDN PRI (ETSI EuroISDN): Q.921 LAPD and Q.931, sans-I/O."""
