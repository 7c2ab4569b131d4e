module github.com/openmeshd/meshd

go 1.24.0
