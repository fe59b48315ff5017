#include <stdio.h>

int main(void)
{
	printf("hello from a vmci job\n");
	return 0;
}
