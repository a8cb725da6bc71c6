"""What the studio draws from stored rows and events: HTML and Plotly figures. No algorithm here."""
