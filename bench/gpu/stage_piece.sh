# GPU calls 2..5 (carry one .gemma/pN folder each): park the piece in /tmp/pieces while the machine stays warm.
mkdir -p /tmp/pieces && cp -r .gemma/p* /tmp/pieces/ && ls /tmp/pieces && du -sh /tmp/pieces
