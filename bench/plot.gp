# Mpps vs live flows, from the harness's mpps.dat (gnuplot -e "dat='...'; png='...'").
set terminal pngcairo size 900,540 font ",11"
set output png
set title "Furiwake worker (1 core): Mpps vs connections in the table"
set logscale x
set xlabel "live flows in the table"
set ylabel "Mpps"
set yrange [0:*]
set key outside right
set grid
plot dat using 1:2 with linespoints lw 2 title "bare (rx->tx)", \
     dat using 1:3 with linespoints lw 2 title "established, uniform", \
     dat using 1:4 with linespoints lw 2 title "established, zipf", \
     dat using 1:5 with linespoints lw 2 title "new connections (SYN)"
